"""Old command name of tools/synthetic_data.py, kept for one release: `python -m dataloaders.synthetic` still works."""

if __name__ == "__main__":
    from tools.synthetic_data import main
    from utils.cli import deprecated_command
    deprecated_command("dataloaders.synthetic", "synthetic_data", main)
