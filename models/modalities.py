"""The modalities, in the order every network, table and file lists them, and their one-letter names
(the `label_T`, `pred_A`, ... columns)."""

MODALITIES = ("text", "audio", "vision")
LETTER = {"text": "T", "audio": "A", "vision": "V"}
