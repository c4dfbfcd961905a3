"""The knowledge layer: text chunks of decisions, entities, documents and runs, embedded locally,
searched by meaning and by keyword (`mf ask`)."""
