"""Cognito users → OS accounts, Maildirs and `.procmailrc` (imap and smtp-out).

`accounts` reads the account files, `plan` decides (pure), `homes` makes directories
without following symlinks, `sync` runs the whole pass. See docs/design.md, "OS users".
"""
