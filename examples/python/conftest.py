# SPDX-License-Identifier: MIT
# The vfioq module as installed, or else as built in this tree (build/python, or
# $VFIOQ_BUILD_DIR/python), and its pytest fixtures: `card`, `faulty_card`, --vfioq-device.
import os
import sys

try:
    import vfioq._vfioq  # noqa: F401  (the extension: an empty vfioq folder would import as a namespace)
except ImportError:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(os.environ.get("VFIOQ_BUILD_DIR", os.path.join(root, "build")), "python"))

pytest_plugins = ["vfioq.pytest_plugin"]
