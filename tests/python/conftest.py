# SPDX-License-Identifier: MIT
# The module under test is the one built in this tree (meson's test sets PYTHONPATH to it).
pytest_plugins = ["vfioq.pytest_plugin"]
