"""The Slack app: Bolt listeners that translate Slack requests into core calls."""
