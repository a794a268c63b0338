"""Controllers: orchestration that the main window delegates (reading, scoring)."""
