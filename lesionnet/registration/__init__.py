"""lesionnet.registration"""
