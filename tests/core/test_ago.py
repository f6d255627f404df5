import datetime as dt

from django.utils import timezone

from flagdash.core.templatetags.flagdash_tags import ago


def test_times_under_a_minute_read_just_now_and_older_ones_say_how_long():
    now = timezone.now()
    assert ago(now - dt.timedelta(seconds=59)) == "just now"
    assert ago(now - dt.timedelta(minutes=2, seconds=5)) == "2\xa0minutes ago"
    assert ago(now - dt.timedelta(hours=20, minutes=57)) == "20\xa0hours, 57\xa0minutes ago"
    assert ago(None) == ""
