"""pyramid_mixer.embeddings"""
