"""The browser explorer: a small server over the one model interface (server.py) and one static
page (page.html); the command that starts it is genlab/commands/explore.py."""
