"""The automatic quality screen: predicted MOS, speaker similarity, intelligibility, failure flags.

Before listening it finds the breakdowns (non-finite, silent, clipped, looping or unintelligible
clips) that make a listening test pointless; after listening it says how far these measures track
the listeners on this model.

* :mod:`.options`: :class:`ScreenOptions`, every threshold in one frozen object;
* :mod:`.results`: typed results; every measure names its model and version, or why it did not run;
* :mod:`.flags`: the failure checks (signal processing only);
* :mod:`.quality` (DNSMOS), :mod:`.speaker` (CAM++ and resemblyzer), :mod:`.asr` (pocketsphinx,
  Whisper) and :mod:`.text` (what the ASR is scored against);
* :mod:`.screener`: :func:`load_screener` loads the models once, :meth:`Screener.screen` screens a clip;
* :mod:`.plan` (``python -m eval.screen.plan``): every clip of a test plan's bank, per configuration;
* :mod:`.agreement`: the screen's per-configuration means beside the listeners' MOS;
* :mod:`.bench` (``python -m eval.screen.bench``): the screen's cost per 10 s clip.

Importing this package loads no model.
"""
