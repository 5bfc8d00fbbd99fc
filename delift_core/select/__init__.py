"""Subset selection: kernels built from utilities or embeddings (`kernels`), the submodular
objectives and their greedy maximisation (`greedy`), and the methods users choose among
(`selection`, with its types in `selection_types`), and `run`, the one entry point from
inputs and a SelectionConfig to a result. docs/design.md §3 has the math."""
