"""Numbers and pictures about trained models: evaluation (:mod:`.evaluate`, per class in
:mod:`.conditional`), image features and FD (:mod:`.features`), side-by-side comparison
(:mod:`.compare`), the trajectory explorer (:mod:`.explore`) and figures (:mod:`.figures`,
:mod:`.conditional_figures`)."""
