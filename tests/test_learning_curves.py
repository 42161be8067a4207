"""scripts/compare_methods.py: arms trained on the same budget, scored on the
fixed standard mask, with the table, JSON and plot it promises; MAE-LM's
decoder loss tabled and plotted apart."""

import json

from harness import run_script


def test_compare_methods_script(brown_data, tmp_path):
    out = tmp_path / "cmp"
    args = ["--data", brown_data, "--arms", "stock,fully_explored@2,mae_lm", "--updates", "10",
            "--validate-every", "5", "--out", out]  # fmt: skip
    result = run_script("compare_methods.py", args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    arms = json.loads((out / "curves.json").read_text())
    assert [a["arm"] for a in arms] == ["stock", "fully_explored@2", "mae_lm"]
    for arm in arms:
        assert [p["updates"] for p in arm["points"]] == [5, 10]
        assert all(7 < p["valid_loss"] < 11 for p in arm["points"])
    # tokens processed: 64-token blocks; 16 sequences per update, or 2 sequences x 7 copies
    assert arms[0]["points"][-1]["tokens_processed"] == 10 * 16 * 64
    assert arms[1]["points"][-1]["tokens_processed"] == 10 * 2 * 7 * 64
    table = (out / "curves.md").read_text()
    assert table.startswith("| updates | stock | fully_explored@2 | mae_lm (decoder loss) |")
    import matplotlib.image

    height, width = matplotlib.image.imread(out / "curves.png").shape[:2]
    assert (width, height) == (1650, 924)  # 3 panels wide, 2 rows: MAE-LM apart
    again = run_script("compare_methods.py", args)
    assert again.returncode != 0 and "already holds runs of stock, fully_explored@2, mae_lm" in again.stderr
