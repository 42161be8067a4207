"""fairseq-side data helpers: vocabulary tables, checked datasets, corpus preparation."""
