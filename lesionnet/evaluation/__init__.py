"""lesionnet.evaluation"""
