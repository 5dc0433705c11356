"""The organiser's CLI: halls, exams, rosters, policies, users, certificates, join codes."""
