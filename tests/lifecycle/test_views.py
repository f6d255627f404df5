"""The short-term page: statuses, filters (HTMX and plain), inline edits, archive and restore
through the pages, permissions, and a fixed number of queries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from flagdash.audit.models import Action, AuditEvent
from flagdash.evaluation.models import EnvironmentFetch, FetchKind, FlagLastEvaluated
from flagdash.flags.models import ConfigVersion, Environment, Flag
from tests.factories import make_flag
from tests.lifecycle.conftest import deploy_at, run, set_values, store_scan

pytestmark = pytest.mark.django_db


def url(**query):
    from urllib.parse import urlencode

    base = reverse("short_term", args=["checkout"])
    return f"{base}?{urlencode(query)}" if query else base


@pytest.fixture
def catalogue(app, beta, production, editor, admin_user):
    today = timezone.localdate()
    days = dt.timedelta(days=1)
    make_flag(
        app, "late", short_term=True, owner="editor", remove_by=today - 3 * days, tags=["release"]
    )
    make_flag(app, "later", short_term=True, owner="admin", remove_by=today - dt.timedelta(days=1))
    make_flag(
        app, "fresh", short_term=True, owner="editor", remove_by=today + dt.timedelta(days=30)
    )
    make_flag(app, "unreferenced", short_term=True, owner="admin", tags=["release"])
    make_flag(app, "forever")  # permanent: not on the page
    store_scan(app, [("late", "a.py", 1), ("later", "a.py", 2), ("fresh", "b.py", 1)])
    return app


def keys_in(html: str) -> list[str]:
    import re

    row = r'<tr id="st-row-\d+" class="status-row-\w+">\s*(?:<td>.*?</td>\s*)?'
    return re.findall(row + r'<td class="flag-key"><a href="[^"]+">([^<]+)</a>', html, re.S)


def test_the_page_lists_short_term_flags_with_status_counts_and_legend(viewer_client, catalogue):
    html = viewer_client.get(url()).content.decode()
    assert keys_in(html) == ["late", "later", "fresh", "unreferenced"]  # soonest remove-by
    assert "forever" not in html
    assert '<span class="count">2</span> overdue' in html
    assert '<span class="count">1</span> unused' in html
    assert '<span class="count">1</span> active' in html
    assert "How a status is decided" in html
    assert "in this order: overdue, ready to remove, unused, active" in html
    assert 'title="Remove-by date' in html  # the rule on hover
    assert "<svg" in html and "Short-term flags by status, last 12 weeks" in html
    assert "Archive selected" not in html  # viewers cannot archive


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "overdue"}, ["late", "later"]),
        ({"status": "unused"}, ["unreferenced"]),
        ({"owner": "editor"}, ["late", "fresh"]),
        ({"tag": "release"}, ["late", "unreferenced"]),
        ({"tag": "release", "status": "overdue"}, ["late"]),
        ({"sort": "-remove_by"}, ["fresh", "later", "late", "unreferenced"]),
        ({"status": "bogus"}, ["late", "later", "fresh", "unreferenced"]),
    ],
)
def test_filters_and_sorting_work_without_javascript(viewer_client, catalogue, query, expected):
    response = viewer_client.get(url(**query))
    assert response.status_code == 200
    assert keys_in(response.content.decode()) == expected


def test_htmx_gets_the_results_fragment_with_counts_of_the_other_filters(
    viewer_client, catalogue, htmx
):
    filters = {**htmx, "HX-Trigger": "st-filters"}  # the filter form asked
    response = viewer_client.get(url(status="overdue", owner="editor"), headers=filters)
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div id="results">')
    assert keys_in(html) == ["late"]
    assert '<span class="count">1</span> overdue' in html  # editor's: late only
    assert '<span class="count">1</span> active' in html  # fresh
    assert response["Vary"].count("HX-Request") == 1


def test_a_status_chip_also_sets_the_status_filter(viewer_client, catalogue, htmx):
    # A chip swaps only the results: the Status select comes along out of band, so the next
    # change of another filter keeps the status instead of silently dropping it.
    html = viewer_client.get(url(status="overdue"), headers=htmx).content.decode()
    select = html[: html.index('<div id="results">')]
    assert '<select id="st-status" name="status" data-autosubmit hx-swap-oob="true">' in select
    assert '<option value="overdue" selected>' in select
    assert set(keys_in(html)) == {"late", "later"}


def test_the_page_links_to_the_archived_flags_to_restore_them(viewer_client, catalogue):
    html = viewer_client.get(url()).content.decode()
    link = reverse("flag_list", args=["checkout"]) + "?archived=only"
    assert f'href="{link}"' in html and ">Archived flags</a>" in html


def test_an_outsider_cannot_see_the_page(outsider_client, catalogue):
    assert outsider_client.get(url()).status_code == 403


def edit_url(key):
    return reverse("short_term_edit", args=["checkout", key])


def row_form(flag, **values):
    return {
        f"f{flag.pk}-lifetime": values.get("lifetime", "short_term"),
        f"f{flag.pk}-owner": values.get("owner", ""),
        f"f{flag.pk}-remove_by": values.get("remove_by", ""),
        "next": url(status="overdue"),
    }


def test_an_inline_edit_keeps_a_deactivated_owner_unless_another_is_picked(
    editor_client, catalogue, htmx
):
    flag = Flag.objects.get(key="later")
    departed = flag.owner  # admin, who leaves
    departed.is_active = False
    departed.save(update_fields=["is_active"])
    page = editor_client.get(url()).content.decode()
    assert f'<option value="{departed.username}" selected>{departed.username} (inactive)' in page
    response = editor_client.post(
        edit_url("later"),
        row_form(flag, owner=departed.username, remove_by="2031-01-31"),
        headers=htmx,
    )
    assert response.status_code == 200
    flag.refresh_from_db()
    assert (flag.owner_id, flag.remove_by) == (departed.pk, dt.date(2031, 1, 31))
    # Handing another flag to someone who has left is still refused.
    other = Flag.objects.get(key="late")
    response = editor_client.post(
        edit_url("late"), row_form(other, owner=departed.username), headers=htmx
    )
    assert "No active user named" in response.content.decode()
    other.refresh_from_db()
    assert other.owner.username == "editor"


def test_an_editor_changes_owner_and_remove_by_inline_and_it_is_audited(
    editor_client, catalogue, htmx
):
    flag = Flag.objects.get(key="late")
    response = editor_client.post(
        edit_url("late"), row_form(flag, owner="admin", remove_by="2031-01-31"), headers=htmx
    )
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#results"
    flag.refresh_from_db()
    assert (flag.owner.username, flag.remove_by) == ("admin", dt.date(2031, 1, 31))
    event = AuditEvent.objects.filter(action=Action.FLAG_UPDATED, flag=flag).latest("id")
    assert event.before["owner"] == "editor" and event.after["remove_by"] == "2031-01-31"
    html = response.content.decode()
    assert keys_in(html) == ["later"]  # no longer overdue: it left the filtered list
    assert "Saved late." in html


def test_marking_a_flag_permanent_takes_it_off_the_page(editor_client, catalogue):
    flag = Flag.objects.get(key="fresh")
    data = row_form(flag, lifetime="permanent", owner="editor")
    response = editor_client.post(edit_url("fresh"), data)
    assert response.status_code == 302
    assert Flag.objects.get(key="fresh").short_term is False
    assert "fresh" not in keys_in(editor_client.get(url()).content.decode())


def test_a_bad_date_or_owner_is_shown_at_the_field_and_changes_nothing(
    editor_client, catalogue, htmx
):
    flag = Flag.objects.get(key="late")
    before = (flag.owner_id, flag.remove_by, flag.updated_at)
    data = row_form(flag, remove_by="31/01/2031")
    response = editor_client.post(edit_url("late"), data, headers=htmx)
    assert response.status_code == 422
    html = response.content.decode()
    assert html.lstrip().startswith(f'<tr id="st-row-{flag.pk}"')
    assert "Enter a date as YYYY-MM-DD." in html and '<details class="row-edit" open>' in html
    response = editor_client.post(edit_url("late"), row_form(flag, owner="ghost"))
    assert response.status_code == 422
    assert "No active user named “ghost”." in response.content.decode()
    flag.refresh_from_db()
    assert (flag.owner_id, flag.remove_by, flag.updated_at) == before


def test_a_viewer_cannot_edit_inline(viewer_client, catalogue, htmx):
    flag = Flag.objects.get(key="late")
    assert viewer_client.post(edit_url("late"), row_form(flag, owner="viewer")).status_code == 403
    response = viewer_client.post(edit_url("late"), row_form(flag, owner="viewer"), headers=htmx)
    assert response.status_code == 403 and "Only editors and admins" in response.content.decode()
    assert Flag.objects.get(key="late").owner.username == "editor"


def archive_url():
    return reverse("short_term_archive", args=["checkout"])


@pytest.fixture
def deployed(catalogue, beta, production, ofrep):
    for key in ("late", "later"):
        set_values(Flag.objects.get(key=key), beta, enabled=True)
    run(deploy_at(beta, None))
    run(deploy_at(production, None))
    return catalogue


def test_the_confirmation_shows_values_backends_and_code_references(admin_client, deployed, htmx):
    response = admin_client.post(
        archive_url(), {"flag": ["late", "unreferenced"], "next": url()}, headers=htmx
    )
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#modal"
    html = response.content.decode()
    assert "<dialog" in html and "Archive 2 flags?" in html
    assert "Code still uses late: 1 reference in 1 file" in html
    assert "Built-in store: flagdash stops serving it over OFREP" in html
    assert "Served <strong>on</strong> in Beta" in html
    assert not Flag.objects.filter(archived_at__isnull=False).exists()  # nothing yet


def test_the_confirmation_warns_that_a_flag_is_still_evaluated(admin_client, deployed, htmx):
    now = timezone.now()
    FlagLastEvaluated.objects.create(
        environment=Environment.objects.get(key="beta"),
        flag_key="unreferenced",
        last_evaluated_at=now - dt.timedelta(minutes=5),
    )
    FlagLastEvaluated.objects.create(  # long ago: no warning for that one
        environment=Environment.objects.get(key="beta"),
        flag_key="late",
        last_evaluated_at=now - dt.timedelta(days=60),
    )
    html = admin_client.post(
        archive_url(), {"flag": ["late", "unreferenced"], "next": url()}, headers=htmx
    ).content.decode()
    assert html.count("Still evaluated over OFREP:") == 1
    warning = html[html.index("Still evaluated over OFREP:") :].split("</p>", 1)[0]
    assert "Beta 5\xa0minutes ago" in warning
    assert "unreferenced, though the code scan found no reference" in warning


def test_confirming_archives_both_and_updates_the_list(admin_client, deployed, htmx):
    versions = ConfigVersion.objects.count()
    response = admin_client.post(
        archive_url(),
        {"flag": ["late", "later"], "confirm": "yes", "next": url(status="overdue")},
        headers=htmx,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert response["HX-Retarget"] == "#results"
    assert keys_in(html) == []  # both left the overdue list
    assert "Archived late, later: deploying to Beta" in html
    assert '<div id="modal" hx-swap-oob="innerHTML"></div>' in html
    assert set(Flag.objects.filter(archived_at__isnull=False).values_list("key", flat=True)) == {
        "late",
        "later",
    }
    assert ConfigVersion.objects.count() == versions + 2


def test_without_javascript_the_confirmation_is_a_page_and_confirming_redirects(
    admin_client, deployed
):
    page = admin_client.get(archive_url(), {"flag": "late"})
    assert page.status_code == 200 and "<html" in page.content.decode()
    done = admin_client.post(archive_url(), {"flag": "late", "confirm": "yes", "next": url()})
    assert done.status_code == 302 and done["Location"] == url()
    assert Flag.objects.get(key="late").archived_at is not None


def test_a_viewer_cannot_archive_through_the_page(viewer_client, deployed):
    response = viewer_client.post(archive_url(), {"flag": "late", "confirm": "yes"})
    assert response.status_code == 403
    assert Flag.objects.get(key="late").archived_at is None


def test_an_editor_is_told_a_protected_environment_needs_an_admin(editor_client, deployed, htmx):
    page = editor_client.get(archive_url(), {"flag": "late"}).content.decode()
    assert "Only admins can change Production." in page
    assert "disabled" in page
    response = editor_client.post(
        archive_url(), {"flag": "late", "confirm": "yes", "next": url()}, headers=htmx
    )
    assert response.status_code == 403
    assert "Only admins can archive a flag live in a protected" in response.content.decode()
    assert Flag.objects.get(key="late").archived_at is None


def test_the_archive_confirmation_focuses_cancel_not_the_destructive_button(
    admin_client, deployed, htmx
):
    page = admin_client.get(archive_url(), {"flag": "late"}, headers=htmx).content.decode()
    form = page[page.index("<form") :]
    archive_button = form[form.index('<button type="submit"') :].split(">", 1)[0]
    assert "autofocus" not in archive_button
    assert "data-close autofocus>Cancel</button>" in form


def test_selecting_nothing_or_an_archived_flag_is_explained(admin_client, deployed):
    response = admin_client.post(archive_url(), {"confirm": "yes"})
    assert response.status_code == 422 and "Select at least one flag." in response.content.decode()
    response = admin_client.post(archive_url(), {"flag": "nope", "confirm": "yes"})
    assert response.status_code == 422 and "No active flag nope" in response.content.decode()


def test_the_flag_pages_archive_and_restore_use_the_same_flow(admin_client, deployed):
    flag_url = reverse("flag_archive", args=["checkout", "late"])
    assert "Archive <code>late</code>?" in admin_client.get(flag_url).content.decode()
    assert admin_client.post(flag_url).status_code == 302
    flag = Flag.objects.get(key="late")
    assert flag.archived_at is not None
    assert "Restore <code>late</code>?" in admin_client.get(flag_url).content.decode()
    restore = reverse("short_term_restore", args=["checkout"])
    response = admin_client.post(restore, {"flag": "late", "confirm": "yes", "next": url()})
    assert response.status_code == 302
    flag.refresh_from_db()
    assert flag.archived_at is None


def test_the_flag_page_lists_code_references_grouped_by_file(viewer_client, catalogue):
    refs = [("late", "src/b.py", 4), ("late", "src/a.py", 9), ("late", "src/a.py", 2)]
    store_scan(catalogue, refs)
    html = viewer_client.get(reverse("flag_detail", args=["checkout", "late"])).content.decode()
    section = html[html.index('id="code-references"') :]
    assert "3 references</strong> to <code>late</code> in 2 files" in section
    assert section.index("src/a.py") < section.index("src/b.py")
    assert "at commit <code" in section and "0123456789ab" in section


def test_the_page_has_a_fixed_number_of_queries_for_10_or_300_flags(
    admin_client, editor, app, beta, production, django_assert_max_num_queries
):
    def add(start, stop):
        for i in range(start, stop):
            make_flag(app, f"flag-{i:03d}", short_term=True, owner="editor", tags=[f"t{i % 3}"])
        run(deploy_at(beta, None))
        store_scan(app, [(f"flag-{i:03d}", "a.py", i + 1) for i in range(0, stop, 2)])

    add(0, 10)
    admin_client.get(url())  # the session and the served states settle
    with CaptureQueriesContext(connection) as ten:
        assert admin_client.get(url()).status_code == 200
    budget = len(ten.captured_queries)
    assert 10 < budget <= 30, budget
    add(10, 300)
    admin_client.get(url())  # folds the new deployment in once
    with django_assert_max_num_queries(budget):
        response = admin_client.get(url(page=2))
    assert "Page 2 of 12" in response.content.decode()


def test_the_page_says_when_flagd_clients_fetched_instead_of_a_last_evaluation(
    viewer_client, app, beta, production
):
    flag = make_flag(app, "by-flagd", short_term=True)
    set_values(flag, beta, enabled=True)
    deploy_at(beta, None)
    EnvironmentFetch.objects.create(
        environment=beta, kind=FetchKind.FLAGD, last_at=timezone.now() - dt.timedelta(hours=2)
    )
    page = viewer_client.get(url()).content.decode()
    row = page[page.index('id="st-row-') :]
    assert ">unknown</span>" in row
    assert "flagd fetched" in row and "2\xa0hours ago" in row
    assert "flagd clients fetch the flags of Beta" in row
