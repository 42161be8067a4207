"""The README's and its pages' fairseq-train and fairseq-hydra-train examples
run as written, with tiny-model overrides appended (later flags win in both
CLIs); the README stays a front page that links every page."""

import logging
import os
import re
import subprocess
import zipfile
from typing import List

import pytest

from fairseq_maskplug.methods import METHODS, POS_METHODS
from harness import (
    BROWN_ZIP,
    CHILD_ENV,
    DOCUMENTED_PAGES,
    REPO_ROOT,
    TOKENS_PER_SAMPLE,
    documented_block,
    hydra_train_in_process,
    logged_values,
    run_module,
    train_in_process,
)
from maskplug_lab.experiments.configurations import TINY, method_flags

SIZE = TINY.encoder
TINY_FLAGS = (
    f"--encoder-layers {SIZE.layers} --encoder-embed-dim {SIZE.dim} --encoder-ffn-embed-dim {SIZE.ffn} "
    f"--encoder-attention-heads {SIZE.heads} "
    f"--tokens-per-sample {TOKENS_PER_SAMPLE} --max-positions {TOKENS_PER_SAMPLE} --sample-break-mode none "
    "--cpu --max-update 5 --total-num-update 5 --warmup-updates 1 --num-workers 0 --log-format simple --log-interval 1"
)
TINY_HYDRA = (
    f"+model.encoder_layers={SIZE.layers} +model.encoder_embed_dim={SIZE.dim} +model.encoder_ffn_embed_dim={SIZE.ffn} "
    f"+model.encoder_attention_heads={SIZE.heads} model.max_positions={TOKENS_PER_SAMPLE} "
    f"task.tokens_per_sample={TOKENS_PER_SAMPLE} "
    "task.sample_break_mode=none common.fp16=false common.cpu=true common.log_format=simple common.log_interval=1 "
    "optimization.max_update=5 optimization.update_freq=[1] lr_scheduler.warmup_updates=1 dataset.num_workers=0"
)


def readme_command(marker: str) -> str:
    return documented_block(marker)


def documented_argv(command: str, program: str) -> List[str]:
    """The arguments bash passes to ``program`` when it runs ``command`` from
    the repository root (variables, quotes and substitutions expanded by bash
    itself), with ``program`` stubbed out; ``command`` must call it once."""
    stub = f'{program}() {{ printf "%s\\0" "$@"; printf "\\n"; }}\n'
    result = subprocess.run(["bash", "-c", stub + command], cwd=REPO_ROOT, env=CHILD_ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    calls = result.stdout.split("\0\n")[:-1]
    assert len(calls) == 1, f"{program} runs {len(calls)} times in {command!r}"
    return calls[0].split("\0")


def run_in_repo(command: str, tmp_path) -> str:
    env = dict(CHILD_ENV, PATH=os.path.dirname(os.sys.executable) + os.pathsep + CHILD_ENV["PATH"])
    result = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


# method (fairseq_maskplug.methods.METHODS) -> what marks its README example
README_TRAIN_EXAMPLES = {
    "random": "--task masked_lm_plus --criterion masked_lm --arch roberta_base",
    "fully_explored": "--task fully_explored_masked_lm",
    "pos_cosine": "--task time_variant_masked_lm",
    "mae_lm": "--arch mae_lm_base",
    "mapnet": "--criterion mapnet_masked_lm",
}


@pytest.mark.parametrize("method", sorted(README_TRAIN_EXAMPLES))
def test_readme_fairseq_train_examples(brown_data, brown_pos_data, tmp_path, method, monkeypatch, caplog):
    """Each method's README example selects it with the method's own flags
    (a preset task may stand for ``--task masked_lm_plus``) and trains: the
    arguments bash gives fairseq-train, run by fairseq-train's main in this
    process (the console script itself runs in the quickstart's test)."""
    data = brown_pos_data if method in POS_METHODS else brown_data
    command = readme_command(README_TRAIN_EXAMPLES[method])
    flags = list(METHODS[method].flags)
    option_pairs = [
        " ".join(flags[i : i + 2]) if i + 1 < len(flags) and not flags[i + 1].startswith("--") else flags[i]
        for i in range(len(flags))
        if flags[i].startswith("--") and flags[i] != "--task"
    ]
    assert all(pair in command for pair in option_pairs), (method, option_pairs)
    extra = " ".join(method_flags(method)[len(flags) :])  # the tiny encoder's MAE-LM decoder depth
    command = command.replace("data/brown_pos", str(data)).replace("data/brown", str(data))
    command = command.split("\npython scripts/export_roberta.py")[0]  # the MAE-LM block's second command
    argv = documented_argv(f"{command.strip()} {TINY_FLAGS} {extra} --save-dir {tmp_path / 'ckpt'}", "fairseq-train")
    monkeypatch.chdir(REPO_ROOT)  # --user-dir fairseq_maskplug: relative to the repository root
    caplog.set_level(logging.INFO)
    train_in_process(argv)
    assert logged_values(caplog.text, "num_updates")[-1] == 5
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def test_readme_hydra_example(brown_data, tmp_path):
    command = readme_command("--config-name base").replace("$PWD/data/brown", str(brown_data))
    overrides = f"{TINY_HYDRA} checkpoint.save_dir={tmp_path / 'ckpt'} hydra.run.dir={tmp_path / 'hydra'}"
    output = run_in_repo(f"{command.strip()} {overrides}", tmp_path)
    updates = re.findall(r"num_updates[=: ](\d+)", output)
    assert updates and int(updates[-1]) == 5, output[-2000:]
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


# what each method prints in its training log (simple format, key=value)
METHOD_SIGNS = {
    "baseline": r"mask_ratio=0\.1[45]\d*,",
    "fully_explored": r"mask_ratio=0\.1429,",  # every copy masks 1/K of its sequence, K = 7
    "time_variant": r"mask_ratio_scheduled=",
    "time_variant_pos": r"pos_ema_NOUN=",
    "mapnet": r"mapnet_entropy=",
    "mae_lm": r"\(decoder\): MaeDecoder",
}


def assert_trained(output: str, save_dir, method: str, updates: int):
    updates_logged = re.findall(r"num_updates[=: ](\d+)", output)
    assert updates_logged and int(updates_logged[-1]) == updates, output[-2000:]
    assert re.search(METHOD_SIGNS[method], output), f"{method}: no {METHOD_SIGNS[method]!r} in the log"
    assert (save_dir / "checkpoint_last.pt").exists()


POS_RECIPES = {METHODS[name].recipe for name in POS_METHODS if METHODS[name].recipe}
RECIPES = sorted(p.stem for p in (REPO_ROOT / "fairseq_maskplug" / "config" / "pretraining").glob("*.yaml"))


def test_there_is_a_recipe_for_every_method():
    assert RECIPES == sorted(METHOD_SIGNS)


def test_the_tiny_size_override_is_the_tiny_configuration():
    """``+size=tiny`` trains the TINY configuration's encoder, blocks, batch
    and learning rate (its 20 updates are a smoke run's, not TINY's 400)."""
    import yaml

    tiny = yaml.safe_load((REPO_ROOT / "fairseq_maskplug" / "config" / "pretraining" / "size" / "tiny.yaml").read_text())
    model = tiny["model"]
    assert (
        model["encoder_layers"],
        model["encoder_embed_dim"],
        model["encoder_ffn_embed_dim"],
        model["encoder_attention_heads"],
    ) == (SIZE.layers, SIZE.dim, SIZE.ffn, SIZE.heads)
    assert model["max_positions"] == tiny["task"]["tokens_per_sample"] == TINY.tokens_per_sample
    assert tiny["dataset"]["batch_size"] == TINY.batch_size
    assert tiny["optimization"]["lr"] == [TINY.optimizer.lr]


@pytest.mark.parametrize("recipe", RECIPES)
def test_readme_recipe_command_runs_every_recipe(brown_data, brown_pos_data, tmp_path, recipe):
    """The README's recipe command, as written, with ``+size=tiny`` added."""
    data = brown_pos_data if recipe in POS_RECIPES else brown_data
    command = readme_command("--config-dir fairseq_maskplug/config/pretraining").replace("$PWD/data/brown", str(data))
    command = command.replace("RECIPE=fully_explored", f"RECIPE={recipe}")
    overrides = f"+size=tiny checkpoint.save_dir={tmp_path / 'ckpt'} hydra.sweep.dir={tmp_path / 'sweep'}"
    assert_trained(run_in_repo(f"{command.strip()} {overrides}", tmp_path), tmp_path / "ckpt", recipe, 20)


def switch_over_rows():
    """(method, hydra overrides) of each row of the README's switch-over table;
    a row starting with + adds to the row above it."""
    table = (REPO_ROOT / "README.md").read_text().split("| to get |", 1)[1].split("\n\n", 1)[0]
    rows, previous = {}, []
    for line in table.splitlines()[2:]:
        label, _, hydra = [cell.strip() for cell in line.strip("|").split("|")]
        overrides = re.findall(r"`([^`]+=[^`]+)`", hydra)
        rows[label] = overrides = (previous if label.startswith("+") else []) + overrides
        previous = overrides
    return rows


# README row label -> its method's recipe (fairseq_maskplug.methods: each method's readme_row)
SWITCH_OVER_METHODS = {method.readme_row: method.recipe for method in METHODS.values() if method.readme_row}


# the row whose run is a child process (an exit status checked, as for every recipe and the hydra example:
# test_clean_exit); the others run in this process with the arguments bash expands from the command
CHILD_PROCESS_ROW = "MAE-LM"


@pytest.mark.parametrize("row", sorted(SWITCH_OVER_METHODS))
def test_readme_switch_over_table_applied_to_fairseqs_roberta_recipe(brown_data, brown_pos_data, tmp_path, row, monkeypatch):
    rows = switch_over_rows()
    assert set(rows) == set(SWITCH_OVER_METHODS) | {"the plugin (needed by every row)"}
    method = SWITCH_OVER_METHODS[row]
    data = brown_pos_data if method in POS_RECIPES else brown_data
    base = readme_command("--config-name base").split("task.data=")[0]  # the ROBERTA_CONFIG line and the recipe
    overrides = " ".join(rows["the plugin (needed by every row)"] + rows[row]).replace(
        "$PWD/fairseq_maskplug", str(REPO_ROOT / "fairseq_maskplug")
    )
    tiny = f"{TINY_HYDRA} checkpoint.save_dir={tmp_path / 'ckpt'} hydra.run.dir={tmp_path / 'hydra'}"
    command = f"{base.strip()} task.data={data} {overrides} {tiny}"
    if row == CHILD_PROCESS_ROW:
        output = run_in_repo(command, tmp_path)
    else:
        monkeypatch.chdir(REPO_ROOT)
        output = hydra_train_in_process(documented_argv(command, "fairseq-hydra-train"))
    assert_trained(output, tmp_path / "ckpt", method, 5)


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "bash scripts/quickstart.sh" in readme and "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()


def brown_slice_zip(path, documents: int = 60):
    """The packaged Brown zip cut to its first ``documents`` documents (NLTK's layout)."""
    with zipfile.ZipFile(BROWN_ZIP) as source, zipfile.ZipFile(path, "w") as target:
        names = [n for n in source.namelist() if re.fullmatch(r"brown/c[a-r]\d\d", n)][:documents]
        for name in names + ["brown/cats.txt", "brown/README"]:
            target.writestr(name, source.read(name))
    return path


def test_quickstart_runs_end_to_end(tmp_path):
    """The quickstart on a 60-document cut of the packaged Brown corpus (its
    default corpus is test_quickstart's), a few updates: it says which corpus
    it uses and ends by printing the checkpoint, the log and the loss at the
    <mask> positions against the unigram reference, with no library warning
    on the console; its data step on the same --out reuses the corpus."""
    out, corpus = tmp_path / "qs", brown_slice_zip(tmp_path / "brown60.zip")
    first = run_in_repo(f"bash scripts/quickstart.sh --corpus {corpus} --updates 4 --out {out}", tmp_path)
    assert f"==> corpus: {corpus}" in first
    assert not re.search(r"Warning|deprecat", first), "the console shows the progress and the summary only"
    progress = r"^update 4/4: loss at <mask> \d+\.\d+ bits, \d+\.\d+ (below|above) the unigram"
    assert re.search(progress, first, flags=re.M), first
    log = (out / "train.log").read_text()  # fairseq's own output: its configuration, its records
    assert "'_name': 'masked_lm_plus'" in log and "'_name': 'masked_lm_plus'" not in first
    assert "Namespace(" not in first and "Namespace(" in (out / "data" / "preprocess.log").read_text()
    assert f"fairseq's log: {out}/train.log" in first and (out / "train_command.sh").exists()
    assert re.search(r"\| input is `<mask>` \| \d+\.\d% \| \d+\.\d+ \|", first)
    assert re.search(r"\| reference at `<mask>`: train unigram \| \| \d+\.\d+ \|", first)
    assert re.search(r"the model: loss at <mask> \d+\.\d+ bits .* \d\.\d{3} (below|above) the train unigram", first)
    assert "what it learned" in first and len(re.findall(r"\(was '.+'\) (\S+ \d\.\d\d, ){4}\S+ \d\.\d\d", first)) == 4
    assert f"checkpoint:      {out}/checkpoints/checkpoint_last.pt" in first
    assert f"python scripts/compare_methods.py --data {out}/data" in first and "python scripts/benchmark.py" in first
    # its data step again on the same --out: the prepared corpus is reused (resuming fairseq-train is
    # test_interrupted_training's)
    again = run_module("maskplug_lab.corpus.quickstart", ["data", out, "--corpus", corpus, "--vocab-size", "1000"])
    assert again.returncode == 0 and "reusing the corpus prepared in" in again.stdout + again.stderr, again.stderr


def test_quickstart_rejects_unknown_options(tmp_path):
    result = subprocess.run(["bash", "scripts/quickstart.sh", "--update", "5"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown option --update (valid: --corpus PATH, --updates N, --out DIR)" in result.stderr


def test_the_readme_is_a_front_page_that_links_every_page():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in DOCUMENTED_PAGES[1:] + ["docs/STUDY.md", "docs/RESULTS.md"]:
        assert f"]({page})" in readme, f"README.md does not link {page}"
        assert (REPO_ROOT / page).exists()
    for page in DOCUMENTED_PAGES[1:]:  # every page leads back
        depth = page.count("/")
        assert f"]({'../' * depth}README.md" in (REPO_ROOT / page).read_text(), page
