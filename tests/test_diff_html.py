"""relay diff --format html: relay/diff_html.py on the diff's public results."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from click.testing import CliRunner
from test_html import HOSTILE, assert_self_contained, parse

from relay import cassette as cm
from relay import diff
from relay.cli import main
from relay.diff_html import page

ROOT = Path(__file__).resolve().parent.parent
TWO_STEP = ROOT / "cassettes" / "two-step-transfer.json"
SAMPLE_1 = ROOT / "cassettes" / "initiate-transfer.json"


def diff_page(a: cm.Cassette, b: cm.Cassette, options: diff.DiffOptions | None = None) -> str:
    options = options or diff.DiffOptions()
    result = diff.diff(a, b, options)
    return page(
        result,
        diff.steps_of(a, options),
        diff.steps_of(b, options),
        a_name="a.json",
        b_name="b.json",
        a_title=a.meta.title,
        b_title=b.meta.title,
    )


def bands(html: str) -> list[str]:
    return re.findall(r'<section class="d-band d-band-(\w+)"', html)


def variant() -> cm.Cassette:
    """The seed with a status changed, two notifications swapped, one added, fields changed."""
    c = cm.load(TWO_STEP)
    events = c.desktops[0].events
    x2 = events[3]
    assert isinstance(x2, cm.Exchange) and x2.response is not None
    x2.response.status = 500
    events[4], events[5] = events[5], events[4]
    n2 = events[2]
    assert isinstance(n2, cm.Notification)
    n2.message["data"]["call"]["callType"] = HOSTILE
    extra = copy.deepcopy(n2)
    extra.id = "n9"
    extra.message["data"]["call"]["state"] = "Retrieved"
    events.insert(3, extra)
    return c


def test_seed_against_sample_1_side_by_side() -> None:
    html = diff_page(cm.load(TWO_STEP), cm.load(SAMPLE_1))
    assert_self_contained(html)
    assert bands(html) == ["removed", "removed", "changed", "removed"]
    assert html.count(">not in B<") == 3 and ">not in A<" not in html
    assert "11 differences in 4 steps" in html
    # Capabilities: lost on A's side, gained on B's, as chips.
    assert '<span class="rt-chip d-cap-lost" title="lost in B">\u2212Retrieve</span>' in html
    assert '<span class="rt-chip rt-gained" title="gained in B">+SwapCalls</span>' in html
    assert '<span class="rt-chip rt-gained" title="gained in B">+CompleteTransfer</span>' in html
    # Fields with their JSON paths: removed on A's side, added on B's.
    assert re.search(r'class="d-removed">.*?data\.extensions</code>', html)
    assert re.search(r'class="d-added">.*?data\.call\.parentCallPath</code>', html)
    assert "Other differences" not in html  # every finding found its place


def test_changed_status_reordered_and_extra_notification() -> None:
    html = diff_page(cm.load(TWO_STEP), variant())
    assert bands(html) == ["same", "changed", "changed", "same"]
    assert '<span class="d-status d-status-changed">200</span>' in html
    assert '<span class="d-status d-status-changed">500</span>' in html
    assert "moved: #1 here, #2 in B" in html and "moved: #2 here, #1 in A" in html
    assert html.count(">not in A<") == 1  # the extra Retrieved
    assert re.search(r'd-note d-added".*?>Retrieved<', html)
    # A changed field shows each side's value, both escaped.
    assert '<code class="d-path">data.call.callType</code>' in html
    assert "&quot;Internal&quot;" in html
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&lt;!--" in html
    assert [t for t, _ in parse(html).tags if t in ("img", "script")] == ["script"]
    assert html.lower().count("</script") == 1
    assert "<!--" not in html
    assert_self_contained(html)


def test_equivalent_recordings() -> None:
    html = diff_page(cm.load(TWO_STEP), cm.load(TWO_STEP))
    assert bands(html) == ["same"] * 4
    assert "equivalent: no differences in 4 steps" in html


def test_options_shape_the_page_as_they_shape_the_diff() -> None:
    only = diff.DiffOptions(only=frozenset({"InitiateTransfer"}))
    html = diff_page(cm.load(TWO_STEP), cm.load(SAMPLE_1), only)
    assert bands(html) == ["changed"]
    ignore = diff.DiffOptions(
        ignore=(diff.PathPattern.parse("data.extensions"), diff.PathPattern.parse("data.call.*"))
    )
    html = diff_page(cm.load(TWO_STEP), cm.load(SAMPLE_1), ignore)
    body = html[html.index("<main") :]
    assert "data.extensions" not in body and "d-cap-lost" not in body


def test_a_finding_that_names_no_drawn_step_is_listed_not_lost() -> None:
    a = cm.load(TWO_STEP)
    steps = diff.steps_of(a)
    stray = diff.Finding("no such step", None, diff.Kind.FIELD_CHANGED, "x.y", 1, HOSTILE)
    result = diff.DiffResult((stray,), len(steps), len(steps))
    html = page(result, steps, steps, a_name=HOSTILE, b_name="b")
    assert "Other differences" in html and "no such step" in html
    assert HOSTILE not in html
    assert_self_contained(html)


def test_cli_format_html() -> None:
    runner = CliRunner()
    args = ["diff", str(TWO_STEP), str(SAMPLE_1), "--format", "html"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1  # different, as with the other formats
    a, b = cm.load(TWO_STEP), cm.load(SAMPLE_1)
    options = diff.DiffOptions()
    expected = page(
        diff.diff(a, b, options),
        diff.steps_of(a, options),
        diff.steps_of(b, options),
        a_name=str(TWO_STEP),
        b_name=str(SAMPLE_1),
        a_title=a.meta.title,
        b_title=b.meta.title,
    )
    assert result.output == expected
    result = runner.invoke(main, [*args, "--only", "InitiateTransfer"])
    assert result.exit_code == 1 and bands(result.output) == ["changed"]
    result = runner.invoke(main, ["diff", str(TWO_STEP), str(TWO_STEP), "--format", "html"])
    assert result.exit_code == 0 and "equivalent" in result.output
    result = runner.invoke(main, ["diff", str(TWO_STEP), "nope.json", "--format", "html"])
    assert result.exit_code == 2 and "<html" not in result.output
