"""Review: what happens to an exam's records after it ran.

``findings`` keeps the reviewers' findings under the two-person rule, ``reports`` builds a student's
timeline, the HTML and PDF report, the whole-exam export and a student's own data, ``retention`` deletes
what is past its retention period (holds excepted) and destroys the exam key, and ``cli`` holds the
``invigil-server`` commands for all of these. It reads the store and never the live view.
"""
