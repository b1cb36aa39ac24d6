from ipamguard.cli import entry

entry()
