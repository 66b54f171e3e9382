"""How projects and their tasks are named (``APM``, ``APM-12``): one spelling for the model's validator,
the API's URLs and fields, task lookups and the commit grammar.

Keys are stored in capitals; people may write them in any case ("apm-12" finds APM-12).
"""

from __future__ import annotations

import re

PROJECT_KEY = r"[A-Z][A-Z0-9]{1,9}"
PROJECT_KEY_ANY_CASE = r"[A-Za-z][A-Za-z0-9]{1,9}"
TASK_NUMBER = r"[1-9][0-9]*"
TASK_KEY_ANY_CASE = rf"{PROJECT_KEY_ANY_CASE}-{TASK_NUMBER}"
# A task key in a URL: any digits, so that a malformed number ("APM-01") reaches the view, which
# authenticates first and then says the task does not exist.
TASK_KEY_URL = rf"{PROJECT_KEY_ANY_CASE}-[0-9]+"
# A stored task key, split into its project key and number.
TASK_KEY_RE = re.compile(rf"^(?P<project>{PROJECT_KEY})-(?P<number>{TASK_NUMBER})$")
# A URL segment naming a project: ``projects/<PROJECT_KEY_URL>/members/``.
PROJECT_KEY_URL = rf"(?P<project_key>{PROJECT_KEY_ANY_CASE})"
