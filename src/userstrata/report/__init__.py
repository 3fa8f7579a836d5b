"""The shareable HTML report and the sections the dashboard shows."""
