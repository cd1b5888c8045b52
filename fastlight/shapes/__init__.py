"""The embedded Shapes world as a plug-in: world, text encoder, oracle + ShapesBench, preset teacher, pretrain."""
