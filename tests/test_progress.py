"""Progress bars: readable lines in a log, and the libraries' own loading bars silenced."""

import io

from diffaug.progress import bar, quiet_libraries


def test_a_bar_in_a_log_writes_a_line_per_tenth_and_no_carriage_returns():
    log = io.StringIO()
    with bar(120, "train", "step", stream=log) as progress:
        for i in range(120):
            progress.update()
            progress.set_postfix(loss=f"{1 / (i + 1):.4f}", refresh=False)
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert 10 <= len(lines) <= 12, lines  # the start, each tenth, the end
    assert lines[-1].startswith("train: 100%") and "120/120" in lines[-1] and "loss=0.0083" in lines[-1]
    assert "step/s" in lines[-1]  # the rate


def test_a_resumed_bar_starts_where_the_work_stopped():
    log = io.StringIO()
    with bar(120, "train", "step", initial=80, stream=log) as progress:
        progress.update(40)
    assert log.getvalue().splitlines()[0].startswith("train:  67%")


def test_loading_bars_and_warnings_of_diffusers_and_transformers_are_silenced():
    import diffusers.utils.logging as d
    import transformers.utils.logging as t

    try:
        quiet_libraries()
        assert not d.is_progress_bar_enabled() and not t.is_progress_bar_enabled()
        assert d.get_verbosity() == d.ERROR and t.get_verbosity() == t.ERROR
    finally:
        d.enable_progress_bar()
        t.enable_progress_bar()
        d.set_verbosity_warning()
        t.set_verbosity_warning()
