"""The words the dashboard's scripts put on the page, in the request's language.

A page hands them to its script as JSON in ``data-i18n``, so the scripts need no gettext of their own.
``{name}`` marks a value the script fills in (the same names in every language: a test checks).
"""

from __future__ import annotations

from flask_babel import gettext as _


def hall() -> dict[str, str]:
    """For ``static/hall.js``, the invigilator's live hall."""
    return {
        "state_live": _("live"),
        "state_stale": _("stale (no heartbeat)"),
        "state_offline": _("offline"),
        "state_left": _("left"),
        "state_expected": _("expected, not present"),
        "state_present_not_enrolled": _("laptop present, not enrolled"),
        "count_live": _("live"),
        "count_stale": _("stale"),
        "count_offline": _("offline"),
        "count_left": _("left"),
        "count_expected": _("not present"),
        "count_present_not_enrolled": _("not enrolled"),
        "laptop": _("laptop"),
        "unenrolled": _("Unenrolled laptop {agent}: {state}"),
        "seat": _("Seat {seat}"),
        "extra_min": _("+{minutes} min"),
        "extra_time": _("extra time"),
        "id_checked": _("ID checked"),
        "open_one": _("{count} open observation: {kinds}"),
        "open_many": _("{count} open observations: {kinds}"),
        "help_badge": _("HELP"),
        "clock_ended": _("Ended"),
        "clock_starts_in": _("Starts in"),
        "clock_running": _("Running · left"),
        "clock_not_started": _("Not started · left"),
        "clock_ends": _("Ends {time} UTC"),
        "clock_extra_until": _("extra time until {time}"),
        "clock_started": _("started {time}"),
        "clock_not_yet": _("not started yet"),
        "gap_span": _("{seconds} s, {since}–{until}"),
        "gap_open": _("no data since {since}"),
        "minutes_early": _("{minutes} min early"),
        "open_seat_title": _("Open the seat"),
        "acked_by": _("acknowledged by {user}"),
        "ack": _("Ack"),
        "asks_for_help": _("{name} asks for help"),
        "open_seat": _("Open seat"),
        "acknowledge": _("Acknowledge"),
        "id_by": _("by {user} at {time}"),
        "monitor": _("monitor {number}"),
        "no_capture": _("No capture yet."),
        "none": _("none"),
        "session": _(
            "agent {agent} · {os} {version} · {address} · last heartbeat {time} · backlog {backlog}"
        ),
        "not_enrolled": _("Not enrolled."),
        "capture_asked": _("asked; the laptop captures at its next heartbeat"),
        "confirm_start": _("Start the exam now?"),
        "confirm_end": _("End the exam for every laptop in the hall?"),
        "confirm_end_extra": _(
            "{count} student(s) with extra time are still working: they are told to stop too."
        ),
        "cannot_load": _("Cannot load the hall: {error}"),
        "refused": _("Live updates refused: {error}"),
        "interrupted": _("Live updates interrupted: reconnecting…"),
    }


def review_queue() -> dict[str, str]:
    """For ``static/review_queue.js``, the review queue."""
    return {
        "apps": _("apps: {list}"),
        "hosts": _("hosts: {list}"),
        "words": _("words: {list}"),
        "state_nothing_here": _("nothing here"),
        "state_finding": _("finding"),
        "cannot_load": _("Could not load the queue: {error}"),
        "you": _("you"),
        "nobody": _("nobody yet"),
        "held": _("{name}: {students} students, {open} open"),
        "by_reviewer": _("By reviewer — {list}"),
        "screen": _("screen {id}"),
        "shown_then": _("shown then"),
        "before": _("before"),
        "during": _("during"),
        "after": _("after"),
        "took": _("You took {count} students: {list}"),
        "took_none": _("No unassigned student has open moments."),
        "gave_back": _("You gave back {count} students: another reviewer can take them."),
        "gave_back_none": _("You hold no students."),
    }


def review_timeline() -> dict[str, str]:
    """For ``static/review.js``, a student's timeline."""
    return {
        "cannot_load": _("Could not load the timeline: {error}"),
        "facts": _("{records} capture records, {changed} changed"),
        "monitors_one": _("{count} monitor"),
        "monitors_many": _("{count} monitors"),
        "enrolled": _("enrolled {time}"),
        "ended": _("ended {time}"),
        "not_enrolled_before": _("no data: not enrolled before {time}"),
        "gap": _("no data: gap {since}–{until} ({duration})"),
        "no_data_after": _("no data after {time}"),
        "screen_lane": _("Screen"),
        "screen_lane_n": _("Screen {number}"),
        "unchanged_records": _("unchanged {since}–{until} ({count} records)"),
        "lane_sites": _("Sites"),
        "lane_device": _("Device"),
        "lane_observations": _("Observations"),
        "lane_findings": _("Findings"),
        "reviewed": _("(reviewed)"),
        "unreviewed": _("unreviewed"),
        "finding_by": _("{label} by {author}: {text}"),
        "proposed_awaiting": _("{label} proposed by {author}, awaiting a second person"),
        "legend_changed": _("changed screen"),
        "legend_unchanged": _("unchanged"),
        "legend_no_data": _("no data"),
        "legend_site": _("site"),
        "legend_blocked": _("blocked site"),
        "legend_device": _("device event"),
        "legend_observation": _("unreviewed observation"),
        "thumbnails_refused": _("Thumbnails refused ({status})"),
        "screen": _("screen"),
        "screen_n": _("screen {number}"),
        "unchanged_span": _("unchanged {since}–{until}, {count} records"),
        "no_data_span": _("no data {since}–{until}"),
        "no_data_for": _("no data {duration}"),
        "shown_until": _("shown until {time}"),
        "gap_event": _("no data for {duration} (until {time})"),
        "no_events": _("No sites, device events or observations."),
        "about": _("about: {label} at {time}"),
        "no_observations": _("This session has no observations."),
        "no_later": _("No later observation."),
        "no_earlier": _("No earlier observation."),
        "no_findings": _("No findings yet. Select a moment, then record one below ({key})."),
        "confirmed_by": _("confirmed by {author} at {time}"),
        "corrects": _("corrects #{id}: {kind} by {author} at {time}"),
        "proposed_by": _("{label} proposed by {author}"),
        "awaiting": _("#{id} at {time} UTC — awaiting a second person's confirmation"),
        "confirm_label": _("Confirm {label}"),
        "withdraw_proposal": _("Withdraw proposal"),
        "by_at": _("#{id} by {author} at {time} UTC"),
        "confirm": _("Confirm"),
        "needs_second": _("Needs a second person's confirmation"),
        "propose_clear": _("Propose to clear"),
        "withdraw": _("Withdraw"),
        "ask_withdraw_confirmed": _(
            "Why should this confirmed suspicion be withdrawn? (a second person must confirm; kept with its "
            "history)"
        ),
        "ask_withdraw": _("Why is this finding withdrawn? (kept with its history)"),
        "ask_withdraw_pending": _("Why is this proposal withdrawn? (kept with its history)"),
        "ask_clear": _("Why was there no irregularity? (a second person must confirm before it counts)"),
        "done_confirm": _("Finding #{id} confirmed."),
        "done_confirm_pending": _("Proposal #{id} confirmed: it counts now."),
        "done_withdraw": _("Finding #{id} withdrawn."),
        "done_withdraw_pending": _("Proposal withdrawn: the finding stands as it was."),
        "done_clear": _("Clearing #{id} recorded."),
        "proposal_recorded": _("Proposal #{id} recorded: it takes effect once a second person confirms it."),
        "give_start": _("Give the moment as HH:MM:SS (UTC)."),
        "give_end": _("Give the end as HH:MM:SS (UTC), or leave it empty."),
        "recorded": _("Finding #{id} recorded."),
        "screens_one": _("{count} screen"),
        "screens_many": _("{count} screens"),
        "viewer_keys": _("← → step, + − zoom, Esc close"),
        "fit_percent": _("fit {percent}%"),
    }
