"""lesionnet.training"""
