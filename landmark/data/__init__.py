"""Data: annotation readers, landmark schemes, the face crop, head pose, augmentation and the Dataset."""
