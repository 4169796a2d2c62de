"""FAQ intent classifier: knowledge base, training, versioned artifacts, serving.

Public entry points (imported from their modules, so that importing the
package stays cheap and serving never imports scikit-learn or matplotlib):

* classifier.knowledge_base: load_knowledge_base, KnowledgeBase, Intent
* classifier.training: train, train_and_save
* classifier.artifact: save_model, load_model, ModelStore, MODEL_FORMAT_VERSION
* classifier.service: FaqModel, Prediction
* classifier.batcher: MicroBatcher
* classifier.evaluation: evaluate
* classifier.cli: register (adds `faq ...` subcommands)

See docs/classifier.md.
"""
