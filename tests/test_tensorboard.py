"""fairseq's --tensorboard-logdir works for every method (tensorboardX is
installed with the package) and the event files hold the plugin's metrics."""

import struct

import pytest

from harness import METHOD_FLAGS, POS_METHODS, train_args, train_subprocess


def event_tags(logdir) -> set:
    """Every scalar tag in the TensorBoard event files under ``logdir``
    (TFRecord: length, its CRC, an Event protobuf, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for path in logdir.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            offset += 12 + length + 4
    return tags


# method -> tags only that method logs (besides fairseq's own and mask_ratio)
SIGNATURE_TAGS = {
    "masked_lm_plus": set(),
    "fully_explored": set(),
    "time_variant_pos": {"mask_ratio_scheduled", "pos_ema_NOUN", "pos_loss_NOUN", "pos_share_NOUN", "pos_base_NOUN"},
    "mapnet": {"mlm_loss", "mapnet_loss", "mapnet_entropy", "mapnet_ess", "mapnet_corr", "mapnet_max_weight", "mapnet_clip"},
    "mae_lm": set(),
}


@pytest.mark.parametrize("method", sorted(METHOD_FLAGS))
def test_tensorboard_event_files_hold_the_plugins_metrics(brown_data, brown_pos_data, tmp_path, method):
    data = brown_pos_data if method in POS_METHODS else brown_data
    logdir = tmp_path / "tensorboard"
    # a process of its own: fairseq keeps one writer per tag for the process's life and closes them at exit
    train_subprocess(train_args(data, tmp_path / "ckpt", updates=6, extra=[*METHOD_FLAGS[method],
                                "--tensorboard-logdir", str(logdir), "--log-interval", "2"]))  # fmt: skip
    tags = event_tags(logdir / "train_inner") | event_tags(logdir / "train")
    assert {"loss", "mask_ratio"} | SIGNATURE_TAGS[method] <= tags, sorted(tags)
    assert "mask_ratio" in event_tags(logdir / "valid")
