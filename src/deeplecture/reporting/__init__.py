"""The generated report: results.md and its figures, from metrics files only."""
