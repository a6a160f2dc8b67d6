"""Built-in reward shapers (outcome, prl, progrs, pav). Imported as ``reasonenv.plugins``.

The shapers arrive with the plugin system; the env's reward is the verified outcome for now.
"""
