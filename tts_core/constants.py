"""Named constants of CosyVoice2 that are fixed by the released model family (not by a yaml size).

Sizes that differ between the tiny and the full model (widths, depths) come from the model
directory's yaml and config.json; only values that every CosyVoice2 checkpoint shares live here.
"""

SAMPLE_RATE = 24_000  # Hz: output audio, prompt mel input
TOKENIZER_SAMPLE_RATE = 16_000  # Hz: speech_tokenizer_v2.onnx and campplus.onnx input
TOKEN_RATE = 25  # speech tokens per second
TOKEN_MEL_RATIO = 2  # mel frames per speech token (mel at 50 Hz)
MEL_HOP = 480  # samples per mel frame at 24 kHz (= HiFT samples per frame)
N_MELS = 80  # mel bins of the flow output / prompt mel
SPEAKER_EMBEDDING_DIM = 192  # campplus x-vector size

SPEECH_TOKEN_SIZE = 6561  # valid speech tokens are 0..6560
EOS_TOKEN = 6561  # end of speech; masked while fewer than min_len tokens were generated
STOP_TOKENS = (6561, 6562, 6563)  # any of these ends decoding (6562/6563 are never masked)
SOS_INDEX = 0  # row of llm_embedding used as start-of-sequence
TASK_ID_INDEX = 1  # row of llm_embedding that separates text from speech

MIN_PROMPT_SECONDS = 1.0  # shorter prompts give too few tokens for a voice
MAX_PROMPT_SECONDS = 30.0  # the speech tokenizer refuses longer input
MAX_TEXT_CHARS = 2_000  # longer text is refused with a clear message (about 3 minutes of speech)
