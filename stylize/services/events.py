"""What the services announce to each other without importing each other (``stylize``
has no import cycle: ``tests/test_layout.py``).

``bank_went_live`` is sent (keyword ``model_name``) once a bank's new live version is
committed: by ``training`` (a joint run, a slot fine-tune) and by ``styles`` (a shipped
bank registered). ``signals.bank_went_live_follow`` moves users' own styles to it
(``own_styles.own_styles_follow_bank``).
"""

from django.dispatch import Signal

bank_went_live = Signal()
