"""opsconsole: a terminal operations console for Docker Swarm on Hyper-V behind HAProxy."""
__version__ = "0.1.0"
