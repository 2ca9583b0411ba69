"""Where the repository is: library modules resolve shipped files and relative config paths against it."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
