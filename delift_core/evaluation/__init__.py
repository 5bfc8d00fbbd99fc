"""Does a subset help? In-context evaluation (`evaluate`), fine-tuning on a subset
(`finetune`, configs in `finetune_types`), method comparison over seeds (`eval_compare`) and
the statistics they report (`metrics`: bootstrap and paired intervals)."""
