"""main() of every script; the root scripts and console entry points call these."""
