"""The REST API and the dashboard over a workspace (``userstrata serve``)."""
