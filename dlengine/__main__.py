from dlengine.cli import entry

entry()
