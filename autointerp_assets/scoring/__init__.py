"""scoring"""

CODE_VERSION = "2"  # bump when a change here changes what the stage writes: its asset and all below go stale
