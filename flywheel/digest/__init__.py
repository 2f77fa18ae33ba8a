"""The weekly digest's content: the week's figures (``metrics``), the knowledge gaps
(``gaps``), the report as a value (``report``), built by ``content`` and drawn by ``render``."""
