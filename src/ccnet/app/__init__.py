"""``ccnet app``: a local web page to segment images and videos and explore criss-cross attention.

* :mod:`~ccnet.app.models`: the model behind the page (weights from a run folder, file or zoo name);
* :mod:`~ccnet.app.handlers`: what the page does, as plain functions (segmentation, legend, downloads,
  attention maps of a clicked pixel, videos);
* :mod:`~ccnet.app.page`: the Gradio page wiring widgets to the handlers, and :func:`~ccnet.app.page.launch`.

Gradio is imported only by :mod:`~ccnet.app.page` (the ``app`` extra).
"""
