"""winnow.rerank.training: fine-tuning a cross-encoder and choosing its defaults.

``pairs`` (training pairs, pairs files, the held-apart split), ``mining`` (hard negatives from a BEIR split),
``finetune`` (sentence-transformers' ``CrossEncoderTrainer``) and ``tuning`` (interpolation weight, windows
or truncation, chosen on dev or held-apart queries and written to the model card).
"""
