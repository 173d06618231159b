"""The studies of `trajsv evaluate` and their one-line help, importable without TensorFlow or JAX (the CLI's parser)."""

STUDY_HELP = {
    "ablations": "Table V: replaced CRNet / VRNet, single modalities, the loss without each view, play2vec",
    "batch-size": "Table VI: batch 8 / 16 / 32 / 48 (one match has 63 training videos), with training time",
    "cell-size": "Table VII: grid cells of 1, 3, 5, 7, 9 m (re-tokenized per size)",
    "embedding-dim": "Table VIII: trajectory representation d_model 32, 64, 128, 256",
    "transfer": "Table IX: SkillCorner -> Hawk-Eye + PFF (kloppy's samples), zero-shot and fine-tuned",
}
