"""Act on the segments: who to contact, with what, when (segments, playbooks, the plan)."""
