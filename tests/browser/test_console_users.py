"""The console with users (issue #21): it asks for a token on the first 401,
says who is signed in, and forgets the token on "Sign out".

A user turns auth on for its whole database, so this test has a database and
an API of its own (no worker: nothing here trains), never the live system's.
"""

import pytest

import support

pytestmark = pytest.mark.browser


def who(page, text):
    """Wait until the top bar says ``text`` of who is signed in."""
    page.wait_for_function("(t) => document.getElementById('whoami').textContent === t", arg=text)


@pytest.fixture
def users_api(databases, tmp_path):
    """An API on a fresh database with one admin, ``root``: (base URL, root's token)."""
    url = databases.create()
    token = support.first_admin(url)
    (tmp_path / "data").mkdir()
    api = support.start_api(url, tmp_path / "data", str(tmp_path))
    yield api.url, token
    api.stop()


def test_the_console_asks_for_a_token_shows_the_user_and_signs_out(chromium, users_api):
    base, token = users_api
    context = chromium.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    try:
        pg = context.new_page()
        errors = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        # Given a console with no token: the first 401 opens the dialog, focus in its field
        pg.goto("/")
        dialog = pg.locator("#token-dialog")
        dialog.wait_for(state="visible")
        assert pg.evaluate("document.activeElement.id") == "token-input"
        assert "needs a token" in pg.text_content("#token-why")
        # When root's token is saved there
        pg.fill("#token-input", token)
        pg.click("#token-dialog button[value=save]")
        dialog.wait_for(state="hidden")
        # Then the top bar names root, and the page loads with it (kept in this browser)
        who(pg, "root (admin)")
        pg.wait_for_selector("tr.empty-row, tr.run-row")
        assert pg.evaluate("localStorage.getItem('tunix-rt.api-token')") == token
        pg.reload()
        who(pg, "root (admin)")
        assert not dialog.is_visible()
        # When root signs out: the token is forgotten and the page says so, without asking again
        pg.click("#signout-button")
        who(pg, "not signed in")
        assert pg.evaluate("localStorage.getItem('tunix-rt.api-token')") is None
        assert pg.is_hidden("#signout-button") and pg.is_visible("#token-button")
        assert not dialog.is_visible()
        assert not errors, errors
    finally:
        context.close()
