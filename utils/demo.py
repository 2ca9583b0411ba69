"""Old name of tools/demo.py, kept for one release: `python -m utils.demo` still runs the demo, with a note."""

if __name__ == '__main__':
    from tools.demo import main
    from utils.cli import deprecated_command
    deprecated_command('utils.demo', 'demo', main)
