"""What staff browsers see: login, the invigilator live view, reviewer timelines and reports (issues 4, 6)."""
