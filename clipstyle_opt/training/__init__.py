"""The optimization loop: phases, the kinds of training step behind one interface, guards, stopping."""
