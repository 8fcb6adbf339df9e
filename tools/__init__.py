"""Developer tools run by hand or by the Makefile, never imported by the site or ``ml``."""
