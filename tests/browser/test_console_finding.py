"""Finding runs in the console (issue #21): the history's name search, tag
chips, status counts and CSV link, all kept in the page's query string; a
run's name, tags and notes on its page.

Against the live system (no users: an open installation, whose caller may
edit any run's notes).  Each test's runs carry a tag of its own, so the
history other tests fill does not leak into what it checks.
"""

import uuid
from urllib.parse import parse_qs, urlparse

import pytest
import requests

pytestmark = pytest.mark.browser

DRY = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}

#: True once the history lists exactly the given run ids (any order).
ROWS_ARE = """(ids) => {
  const got = [...document.querySelectorAll('tr.run-row')].map((r) => r.dataset.runId).sort();
  return JSON.stringify(got) === JSON.stringify(ids);
}"""


def wait_rows(page, ids):
    page.wait_for_function(ROWS_ARE, arg=sorted(ids))


def query(url):
    return parse_qs(urlparse(url).query)


@pytest.fixture
def three_runs(live_system):
    """Three completed dry runs, named and tagged: {key: run}, and their common tag."""
    uid = uuid.uuid4().hex[:8]
    common = f"find-{uid}"
    made = {
        "a": live_system.submit(dict(DRY, name=f"lr-sweep-{uid}-a", tags=[common, "alpha"])),
        "b": live_system.submit(dict(DRY, name=f"lr-sweep-{uid}-b", tags=[common, "beta"])),
        "c": live_system.submit(dict(DRY, name=f"other-{uid}", tags=[common, "alpha"])),
    }
    for run in made.values():
        live_system.wait_status(run["run_id"], "completed", timeout=60)
    return made, uid, common


def test_history_filters_live_in_the_url_and_the_csv_link_follows_them(page, live_system, three_runs):
    runs, uid, common = three_runs
    ids = {k: r["run_id"] for k, r in runs.items()}

    # Given a shared address with a search (any case) and a tag
    page.goto(f"/?q=LR-SWEEP-{uid}&tag={common}")
    # Then only the two runs whose name matches are listed, by name, with their tags
    wait_rows(page, [ids["a"], ids["b"]])
    row_a = page.locator(f'tr[data-run-id="{ids["a"]}"]')
    assert row_a.locator(".run-name").inner_text() == f"lr-sweep-{uid}-a"
    assert row_a.locator(".run-tag").all_inner_texts() == [common, "alpha"]
    assert page.input_value("#filter-q") == f"LR-SWEEP-{uid}"
    assert page.locator("[data-testid=active-filters] .filter-chip-text").all_inner_texts() == [common]
    # and the status counts are the answer's, for these filters
    assert page.locator(".chip[data-status=completed] .chip-count").inner_text() == "2"
    # and "mine" is not offered: there is no user here
    assert page.locator("[data-testid=filter-mine]").is_hidden()
    # and the CSV link carries the same filters
    href = page.get_attribute("[data-testid=csv-link]", "href")
    assert urlparse(href).path == "/api/tunix/runs.csv"
    assert query(href) == {"q": [f"LR-SWEEP-{uid}"], "tag": [common]}

    # When a tag is typed and Enter pressed: a chip, the URL and the list follow
    page.fill("#filter-tag", "beta")
    page.press("#filter-tag", "Enter")
    wait_rows(page, [ids["b"]])
    assert query(page.url)["tag"] == [common, "beta"]
    assert page.input_value("#filter-tag") == ""
    # When that chip's remove button is pressed (from the keyboard)
    remove = page.get_by_role("button", name="Remove the filter tag beta")
    remove.focus()
    page.keyboard.press("Enter")
    wait_rows(page, [ids["a"], ids["b"]])
    assert query(page.url)["tag"] == [common]
    # the focus stays on the chips (the one left), not lost to the page
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == f"Remove the filter tag {common}"

    # When a search is typed: the URL changes (no reload) and the list follows
    page.fill("#filter-q", f"other-{uid}")
    page.wait_for_function("(q) => new URLSearchParams(location.search).get('q') === q", arg=f"other-{uid}")
    wait_rows(page, [ids["c"]])
    assert query(page.url) == {"q": [f"other-{uid}"], "tag": [common]}

    # Then a reload keeps the filters
    page.reload()
    wait_rows(page, [ids["c"]])
    assert page.input_value("#filter-q") == f"other-{uid}"
    assert page.locator("[data-testid=active-filters] .filter-chip-text").all_inner_texts() == [common]
    # and the CSV link is the same view, every page of it
    href = page.get_attribute("[data-testid=csv-link]", "href")
    assert query(href) == {"q": [f"other-{uid}"], "tag": [common]}
    answer = requests.get(href, timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    lines = answer.text.strip().splitlines()
    assert len(lines) == 2 and ids["c"] in lines[1] and f"other-{uid}" in lines[1]

    # A tag on a row filters by it; "Clear filters" shows every run again
    page.locator(f'tr[data-run-id="{ids["c"]}"] .run-tag', has_text="alpha").click()
    page.wait_for_function("() => new URLSearchParams(location.search).getAll('tag').includes('alpha')")
    page.get_by_role("button", name="Clear filters").click()
    page.wait_for_function("() => location.search === ''")
    assert page.input_value("#filter-q") == ""
    assert page.locator("[data-testid=active-filters] .filter-chip").count() == 0


def test_a_bad_tag_is_said_not_sent(page, live_system):
    page.goto("/")
    page.wait_for_selector("tr.run-row, tr.empty-row")
    page.fill("#filter-tag", "no spaces")
    page.press("#filter-tag", "Enter")
    page.locator("#filter-tag-error").wait_for()
    assert page.get_attribute("#filter-tag", "aria-invalid") == "true"
    assert "tag" not in query(page.url)


def test_the_run_page_shows_name_tags_and_saves_notes(page, live_system, three_runs):
    runs, uid, common = three_runs
    run_id = runs["a"]["run_id"]
    page.goto(f"/runs/{run_id}")
    assert page.locator("[data-testid=run-name]").inner_text() == f"lr-sweep-{uid}-a"
    assert page.locator("[data-testid=run-tags] li").all_inner_texts() == [common, "alpha"]
    # An open installation's caller may edit: the field, empty
    field = page.locator("[data-testid=notes-field]")
    field.wait_for()  # shown once GET /me says this caller may edit
    assert field.input_value() == ""
    field.fill("lr 3e-4 diverged\nnext: 1e-4")
    page.click("[data-testid=notes-save]")
    page.locator("[data-testid=toast]", has_text="Notes saved").wait_for()
    assert live_system.run(run_id)["notes"] == "lr 3e-4 diverged\nnext: 1e-4"
    # and a reload shows them (the field is filled once the page knows who may edit)
    page.reload()
    page.wait_for_function("(t) => document.querySelector('[data-testid=notes-field]')?.value === t",
                           arg="lr 3e-4 diverged\nnext: 1e-4")
