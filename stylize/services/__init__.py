"""Business logic of the app, one module per subject; every write goes through here.

- ``jobs``: a job's life: checked and created from an upload, guarded state changes
  (queued → running → succeeded / failed), retries, the stuck-job sweep, deletion (and
  of every job once it expires).
- ``stylizing``: one job's run: stored photo → model backend → result.
- ``job_files``: a job's photo and result files: replaced upright, kept private, when
  they expire, orphans swept.
- ``job_emails``: the email that tells an owner how their job ended (account mails:
  ``accounts``).
- ``styles``: the shipped styles registered, a retrain queued.
- ``training``: a style's or a bank's network trained, exported and made live, with
  ``model_files`` (where a model's files are, which version is live), ``serving``
  (``models.config`` written, a new version preloaded), ``training_progress`` (a run's
  progress, losses and samples on the style's page) and ``evaluation`` (a version scored
  on held-out photos).
- ``accounts``: sign-up, the address confirmed, API tokens, an account deleted.
- ``previews``: a photo painted small in every style before any job (its own queue),
  re-painted at another strength or mix, deleted after an hour; jobs made from a
  preview's or an earlier job's photo.
- ``own_styles``: a user's own painting learnt as one new row of the live bank, kept
  private, learnt again when the bank moves.
- ``sharing``: share links to a result. ``webhooks``: a program told how its job ended.
- ``events``: what the services announce to each other without importing each other.
- ``queueing``: the Celery messages the services send, once their transaction commits.

Views, the API, the admin, commands and tasks call these; these never import them
(``tests/test_layout.py`` checks that ``stylize`` has no import cycle).
"""
