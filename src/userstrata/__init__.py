"""userstrata."""
