"""pyramid_mixer.features"""
